build-x/obj/src/http/h1.o: src/http/h1.c src/http/h1.h src/http/h1-t.h \
 src/core/common.h
src/http/h1.h:
src/http/h1-t.h:
src/core/common.h:
