build-x/obj/src/config/compile.o: src/config/compile.c \
 src/config/compile.h src/model/resource-t.h src/model/snapshot-t.h \
 src/core/common.h src/config/load.h src/model/diag.h \
 src/config/snapshot.h src/cluster/service.h src/core/strmap.h \
 src/core/log.h src/core/loop.h src/route/route.h src/route/route-t.h \
 src/tls/tls.h src/tls/tls-t.h src/observe/trace.h src/observe/trace-t.h \
 src/observe/logformat.h
src/config/compile.h:
src/model/resource-t.h:
src/model/snapshot-t.h:
src/core/common.h:
src/config/load.h:
src/model/diag.h:
src/config/snapshot.h:
src/cluster/service.h:
src/core/strmap.h:
src/core/log.h:
src/core/loop.h:
src/route/route.h:
src/route/route-t.h:
src/tls/tls.h:
src/tls/tls-t.h:
src/observe/trace.h:
src/observe/trace-t.h:
src/observe/logformat.h:
