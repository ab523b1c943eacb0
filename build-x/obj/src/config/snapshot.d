build-x/obj/src/config/snapshot.o: src/config/snapshot.c \
 src/config/snapshot.h src/model/snapshot-t.h src/core/common.h \
 src/model/resource-t.h src/route/route.h src/route/route-t.h \
 src/tls/tls.h src/tls/tls-t.h src/observe/trace.h src/core/loop.h \
 src/observe/trace-t.h src/observe/logformat.h
src/config/snapshot.h:
src/model/snapshot-t.h:
src/core/common.h:
src/model/resource-t.h:
src/route/route.h:
src/route/route-t.h:
src/tls/tls.h:
src/tls/tls-t.h:
src/observe/trace.h:
src/core/loop.h:
src/observe/trace-t.h:
src/observe/logformat.h:
