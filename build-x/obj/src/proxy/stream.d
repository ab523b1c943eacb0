build-x/obj/src/proxy/stream.o: src/proxy/stream.c src/proxy/proxy.h \
 src/proxy/proxy-t.h src/core/buf.h src/core/common.h src/core/loop.h \
 src/cluster/lb-t.h src/model/snapshot-t.h src/model/resource-t.h \
 src/http/h1-t.h src/http/h2req.h src/http/grpcweb.h \
 src/observe/trace-t.h src/observe/stats-t.h src/observe/record-t.h \
 src/observe/stats.h src/proxy/session.h src/proxy/sockio.h \
 src/proxy/httpclient.h src/proxy/grpcweb.h src/http/h1.h src/http/body.h \
 src/cluster/lb.h src/config/snapshot.h src/observe/logformat.h \
 src/observe/trace.h
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
src/proxy/session.h:
src/proxy/sockio.h:
src/proxy/httpclient.h:
src/proxy/grpcweb.h:
src/http/h1.h:
src/http/body.h:
src/cluster/lb.h:
src/config/snapshot.h:
src/observe/logformat.h:
src/observe/trace.h:
