build-x/obj/src/proxy/grpcweb.o: src/proxy/grpcweb.c src/proxy/grpcweb.h \
 src/proxy/proxy-t.h src/core/buf.h src/core/common.h src/core/loop.h \
 src/cluster/lb-t.h src/model/snapshot-t.h src/model/resource-t.h \
 src/http/h1-t.h src/http/h2req.h src/http/grpcweb.h \
 src/observe/trace-t.h src/observe/stats-t.h src/observe/record-t.h \
 src/proxy/proxy.h src/observe/stats.h src/proxy/httpclient.h \
 src/http/body.h
src/proxy/grpcweb.h:
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
src/proxy/proxy.h:
src/observe/stats.h:
src/proxy/httpclient.h:
src/http/body.h:
