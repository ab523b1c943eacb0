build-x/obj/src/proxy/worker.o: src/proxy/worker.c src/proxy/proxy.h \
 src/proxy/proxy-t.h src/core/buf.h src/core/common.h src/core/loop.h \
 src/cluster/lb-t.h src/model/snapshot-t.h src/model/resource-t.h \
 src/http/h1-t.h src/http/h2req.h src/http/grpcweb.h \
 src/observe/trace-t.h src/observe/stats-t.h src/observe/record-t.h \
 src/observe/stats.h src/proxy/sockio.h src/observe/logformat.h \
 src/cluster/lb.h src/config/snapshot.h src/core/log.h src/route/route.h \
 src/route/route-t.h src/observe/trace.h
src/proxy/proxy.h:
src/proxy/proxy-t.h:
src/core/buf.h:
src/core/common.h:
src/core/loop.h:
src/cluster/lb-t.h:
src/model/snapshot-t.h:
src/model/resource-t.h:
src/http/h1-t.h:
src/http/h2req.h:
src/http/grpcweb.h:
src/observe/trace-t.h:
src/observe/stats-t.h:
src/observe/record-t.h:
src/observe/stats.h:
src/proxy/sockio.h:
src/observe/logformat.h:
src/cluster/lb.h:
src/config/snapshot.h:
src/core/log.h:
src/route/route.h:
src/route/route-t.h:
src/observe/trace.h:
