build-x/obj/src/tls/selfsigned.o: src/tls/selfsigned.c src/tls/tls.h \
 src/model/resource-t.h src/core/common.h src/tls/tls-t.h
src/tls/tls.h:
src/model/resource-t.h:
src/core/common.h:
src/tls/tls-t.h:
