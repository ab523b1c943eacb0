build-x/obj/src/http/path.o: src/http/path.c src/http/path.h \
 src/core/common.h
src/http/path.h:
src/core/common.h:
