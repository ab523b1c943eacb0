build-x/obj/src/tls/istio.o: src/tls/istio.c src/tls/tls.h \
 src/model/resource-t.h src/core/common.h src/tls/tls-t.h src/core/log.h \
 src/core/loop.h
src/tls/tls.h:
src/model/resource-t.h:
src/core/common.h:
src/tls/tls-t.h:
src/core/log.h:
src/core/loop.h:
