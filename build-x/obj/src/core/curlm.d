build-x/obj/src/core/curlm.o: src/core/curlm.c src/core/curlm.h \
 src/core/common.h src/core/log.h src/core/loop.h
src/core/curlm.h:
src/core/common.h:
src/core/log.h:
src/core/loop.h:
