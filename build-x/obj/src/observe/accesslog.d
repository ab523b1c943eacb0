build-x/obj/src/observe/accesslog.o: src/observe/accesslog.c \
 src/observe/logformat.h src/core/common.h src/model/resource-t.h \
 src/observe/record-t.h src/core/buf.h src/core/loop.h \
 src/model/snapshot-t.h
src/observe/logformat.h:
src/core/common.h:
src/model/resource-t.h:
src/observe/record-t.h:
src/core/buf.h:
src/core/loop.h:
src/model/snapshot-t.h:
