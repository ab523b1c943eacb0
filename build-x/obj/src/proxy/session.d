build-x/obj/src/proxy/session.o: src/proxy/session.c src/proxy/session.h \
 src/proxy/proxy.h src/proxy/proxy-t.h src/core/buf.h src/core/common.h \
 src/core/loop.h src/cluster/lb-t.h src/model/snapshot-t.h \
 src/model/resource-t.h src/http/h1-t.h src/http/h2req.h \
 src/http/grpcweb.h src/observe/trace-t.h src/observe/stats-t.h \
 src/observe/record-t.h src/observe/stats.h src/proxy/httpclient.h \
 src/proxy/grpcweb.h src/cluster/lb.h src/config/snapshot.h src/http/h1.h \
 src/http/h1write.h src/http/body.h src/http/path.h src/route/route.h \
 src/route/route-t.h src/observe/trace.h src/observe/logformat.h \
 src/tls/tls.h src/tls/tls-t.h
src/proxy/session.h:
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
src/proxy/httpclient.h:
src/proxy/grpcweb.h:
src/cluster/lb.h:
src/config/snapshot.h:
src/http/h1.h:
src/http/h1write.h:
src/http/body.h:
src/http/path.h:
src/route/route.h:
src/route/route-t.h:
src/observe/trace.h:
src/observe/logformat.h:
src/tls/tls.h:
src/tls/tls-t.h:
