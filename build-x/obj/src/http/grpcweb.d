build-x/obj/src/http/grpcweb.o: src/http/grpcweb.c src/http/grpcweb.h \
 src/core/common.h
src/http/grpcweb.h:
src/core/common.h:
