build-x/obj/src/tls/context.o: src/tls/context.c src/tls/tls.h \
 src/model/resource-t.h src/core/common.h src/tls/tls-t.h
src/tls/tls.h:
src/model/resource-t.h:
src/core/common.h:
src/tls/tls-t.h:
