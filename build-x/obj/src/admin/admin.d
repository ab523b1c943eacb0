build-x/obj/src/admin/admin.o: src/admin/admin.c src/admin/admin.h \
 src/admin/admin-t.h src/control/reload.h src/observe/stats-t.h \
 src/model/snapshot-t.h src/core/common.h src/model/resource-t.h \
 src/core/log.h src/observe/stats.h src/core/loop.h src/http/h1.h \
 src/http/h1-t.h src/observe/metrics.h src/sources/kubernetes.h \
 src/tls/tls.h src/tls/tls-t.h
src/admin/admin.h:
src/admin/admin-t.h:
src/control/reload.h:
src/observe/stats-t.h:
src/model/snapshot-t.h:
src/core/common.h:
src/model/resource-t.h:
src/core/log.h:
src/observe/stats.h:
src/core/loop.h:
src/http/h1.h:
src/http/h1-t.h:
src/observe/metrics.h:
src/sources/kubernetes.h:
src/tls/tls.h:
src/tls/tls-t.h:
