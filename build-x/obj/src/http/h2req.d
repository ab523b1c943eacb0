build-x/obj/src/http/h2req.o: src/http/h2req.c src/http/h2req.h \
 src/http/h1-t.h src/core/common.h src/http/h1.h
src/http/h2req.h:
src/http/h1-t.h:
src/core/common.h:
src/http/h1.h:
