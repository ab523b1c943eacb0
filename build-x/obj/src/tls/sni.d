build-x/obj/src/tls/sni.o: src/tls/sni.c src/tls/tls.h \
 src/model/resource-t.h src/core/common.h src/tls/tls-t.h \
 src/core/strmap.h
src/tls/tls.h:
src/model/resource-t.h:
src/core/common.h:
src/tls/tls-t.h:
src/core/strmap.h:
