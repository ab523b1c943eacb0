build-x/obj/src/control/reload.o: src/control/reload.c \
 src/control/reload.h src/observe/stats-t.h src/control/apply.h \
 src/model/resource-t.h src/model/snapshot-t.h src/core/common.h \
 src/control/hotrestart.h src/config/compile.h src/config/load.h \
 src/model/diag.h src/config/snapshot.h src/core/log.h src/core/loop.h \
 src/proxy/proxy.h src/proxy/proxy-t.h src/core/buf.h src/cluster/lb-t.h \
 src/http/h1-t.h src/http/h2req.h src/http/grpcweb.h \
 src/observe/trace-t.h src/observe/record-t.h src/observe/stats.h \
 src/tls/tls.h src/tls/tls-t.h src/observe/trace.h
src/control/reload.h:
src/observe/stats-t.h:
src/control/apply.h:
src/model/resource-t.h:
src/model/snapshot-t.h:
src/core/common.h:
src/control/hotrestart.h:
src/config/compile.h:
src/config/load.h:
src/model/diag.h:
src/config/snapshot.h:
src/core/log.h:
src/core/loop.h:
src/proxy/proxy.h:
src/proxy/proxy-t.h:
src/core/buf.h:
src/cluster/lb-t.h:
src/http/h1-t.h:
src/http/h2req.h:
src/http/grpcweb.h:
src/observe/trace-t.h:
src/observe/record-t.h:
src/observe/stats.h:
src/tls/tls.h:
src/tls/tls-t.h:
src/observe/trace.h:
