build-x/obj/src/observe/logformat.o: src/observe/logformat.c \
 src/observe/logformat.h src/core/common.h src/model/resource-t.h
src/observe/logformat.h:
src/core/common.h:
src/model/resource-t.h:
