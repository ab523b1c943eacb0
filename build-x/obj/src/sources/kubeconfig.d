build-x/obj/src/sources/kubeconfig.o: src/sources/kubeconfig.c \
 src/sources/kubeconfig.h src/core/common.h
src/sources/kubeconfig.h:
src/core/common.h:
