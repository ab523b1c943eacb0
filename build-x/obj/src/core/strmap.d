build-x/obj/src/core/strmap.o: src/core/strmap.c src/core/strmap.h \
 src/core/common.h
src/core/strmap.h:
src/core/common.h:
