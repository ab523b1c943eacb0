build-x/obj/src/core/arena.o: src/core/arena.c src/core/arena.h \
 src/core/common.h
src/core/arena.h:
src/core/common.h:
