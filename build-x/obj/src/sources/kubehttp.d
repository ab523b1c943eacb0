build-x/obj/src/sources/kubehttp.o: src/sources/kubehttp.c \
 src/sources/kubehttp.h src/sources/kubeconfig.h src/core/common.h \
 src/core/curlm.h src/core/log.h src/core/loop.h
src/sources/kubehttp.h:
src/sources/kubeconfig.h:
src/core/common.h:
src/core/curlm.h:
src/core/log.h:
src/core/loop.h:
