build-x/obj/src/sources/dirwatch.o: src/sources/dirwatch.c \
 src/sources/dirwatch.h src/core/loop.h src/core/common.h src/core/log.h
src/sources/dirwatch.h:
src/core/loop.h:
src/core/common.h:
src/core/log.h:
