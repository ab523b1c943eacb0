build-x/obj/src/tls/certs.o: src/tls/certs.c src/tls/tls.h \
 src/model/resource-t.h src/core/common.h src/tls/tls-t.h \
 src/core/arena.h
src/tls/tls.h:
src/model/resource-t.h:
src/core/common.h:
src/tls/tls-t.h:
src/core/arena.h:
