build-x/obj/src/sources/kubestore.o: src/sources/kubestore.c \
 src/sources/kubestore.h src/core/common.h
src/sources/kubestore.h:
src/core/common.h:
