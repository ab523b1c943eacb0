build-x/obj/src/http/body.o: src/http/body.c src/http/body.h \
 src/http/h1-t.h src/core/common.h src/http/h1.h
src/http/body.h:
src/http/h1-t.h:
src/core/common.h:
src/http/h1.h:
