build-x/obj/src/main.o: src/main.c src/admin/admin.h src/admin/admin-t.h \
 src/cluster/dns.h src/config/load.h src/model/diag.h \
 src/model/resource-t.h src/control/check.h src/control/hotrestart.h \
 src/control/listen.h src/model/snapshot-t.h src/core/common.h \
 src/control/reload.h src/observe/stats-t.h src/core/log.h \
 src/core/loop.h src/proxy/proxy.h src/proxy/proxy-t.h src/core/buf.h \
 src/core/loop.h src/cluster/lb-t.h src/http/h1-t.h src/http/h2req.h \
 src/http/grpcweb.h src/observe/trace-t.h src/observe/record-t.h \
 src/observe/stats.h src/route/route.h src/route/route-t.h \
 src/sources/dirwatch.h src/sources/kubernetes.h src/tls/tls.h \
 src/tls/tls-t.h src/observe/trace.h src/observe/stats.h
src/admin/admin.h:
src/admin/admin-t.h:
src/cluster/dns.h:
src/config/load.h:
src/model/diag.h:
src/model/resource-t.h:
src/control/check.h:
src/control/hotrestart.h:
src/control/listen.h:
src/model/snapshot-t.h:
src/core/common.h:
src/control/reload.h:
src/observe/stats-t.h:
src/core/log.h:
src/core/loop.h:
src/proxy/proxy.h:
src/proxy/proxy-t.h:
src/core/buf.h:
src/core/loop.h:
src/cluster/lb-t.h:
src/http/h1-t.h:
src/http/h2req.h:
src/http/grpcweb.h:
src/observe/trace-t.h:
src/observe/record-t.h:
src/observe/stats.h:
src/route/route.h:
src/route/route-t.h:
src/sources/dirwatch.h:
src/sources/kubernetes.h:
src/tls/tls.h:
src/tls/tls-t.h:
src/observe/trace.h:
src/observe/stats.h:
