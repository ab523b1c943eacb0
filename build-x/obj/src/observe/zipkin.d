build-x/obj/src/observe/zipkin.o: src/observe/zipkin.c \
 src/observe/trace.h src/core/loop.h src/core/common.h \
 src/observe/trace-t.h src/model/snapshot-t.h src/model/resource-t.h \
 src/core/curlm.h src/core/log.h
src/observe/trace.h:
src/core/loop.h:
src/core/common.h:
src/observe/trace-t.h:
src/model/snapshot-t.h:
src/model/resource-t.h:
src/core/curlm.h:
src/core/log.h:
