build-x/obj/src/http/h1write.o: src/http/h1write.c src/http/h1write.h \
 src/http/h1-t.h src/core/common.h
src/http/h1write.h:
src/http/h1-t.h:
src/core/common.h:
