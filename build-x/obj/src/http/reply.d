build-x/obj/src/http/reply.o: src/http/reply.c src/http/reply.h \
 src/http/reply-t.h src/core/common.h src/http/h1write.h src/http/h1-t.h
src/http/reply.h:
src/http/reply-t.h:
src/core/common.h:
src/http/h1write.h:
src/http/h1-t.h:
