build-x/obj/src/core/log.o: src/core/log.c src/core/log.h \
 src/core/common.h
src/core/log.h:
src/core/common.h:
