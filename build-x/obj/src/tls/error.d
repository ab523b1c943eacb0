build-x/obj/src/tls/error.o: src/tls/error.c src/tls/tls.h \
 src/model/resource-t.h src/core/common.h src/tls/tls-t.h
src/tls/tls.h:
src/model/resource-t.h:
src/core/common.h:
src/tls/tls-t.h:
