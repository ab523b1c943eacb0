build-x/obj/src/core/loop.o: src/core/loop.c src/core/loop.h \
 src/core/common.h
src/core/loop.h:
src/core/common.h:
