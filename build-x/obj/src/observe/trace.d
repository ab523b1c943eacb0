build-x/obj/src/observe/trace.o: src/observe/trace.c src/observe/trace.h \
 src/core/loop.h src/core/common.h src/observe/trace-t.h \
 src/model/resource-t.h src/model/snapshot-t.h src/core/log.h
src/observe/trace.h:
src/core/loop.h:
src/core/common.h:
src/observe/trace-t.h:
src/model/resource-t.h:
src/model/snapshot-t.h:
src/core/log.h:
