build-x/obj/src/sources/kubernetes.o: src/sources/kubernetes.c \
 src/sources/kubernetes.h src/sources/kubeconfig.h src/sources/kubehttp.h \
 src/sources/kubestore.h src/config/load.h src/model/diag.h \
 src/model/resource-t.h src/core/common.h src/core/log.h src/core/loop.h \
 src/core/strmap.h
src/sources/kubernetes.h:
src/sources/kubeconfig.h:
src/sources/kubehttp.h:
src/sources/kubestore.h:
src/config/load.h:
src/model/diag.h:
src/model/resource-t.h:
src/core/common.h:
src/core/log.h:
src/core/loop.h:
src/core/strmap.h:
