build-x/obj/src/http/h2head.o: src/http/h2head.c src/http/h2head.h \
 src/http/h1-t.h src/core/common.h src/http/h1write.h
src/http/h2head.h:
src/http/h1-t.h:
src/core/common.h:
src/http/h1write.h:
