build-x/obj/src/observe/metrics.o: src/observe/metrics.c \
 src/observe/metrics.h src/observe/trace.h src/core/loop.h \
 src/core/common.h src/observe/trace-t.h src/observe/stats.h \
 src/observe/stats-t.h src/model/snapshot-t.h src/model/resource-t.h
src/observe/metrics.h:
src/observe/trace.h:
src/core/loop.h:
src/core/common.h:
src/observe/trace-t.h:
src/observe/stats.h:
src/observe/stats-t.h:
src/model/snapshot-t.h:
src/model/resource-t.h:
