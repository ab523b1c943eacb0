build-x/obj/src/tls/tickets.o: src/tls/tickets.c src/tls/tls.h \
 src/model/resource-t.h src/core/common.h src/tls/tls-t.h src/core/loop.h
src/tls/tls.h:
src/model/resource-t.h:
src/core/common.h:
src/tls/tls-t.h:
src/core/loop.h:
