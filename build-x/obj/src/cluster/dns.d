build-x/obj/src/cluster/dns.o: src/cluster/dns.c src/cluster/dns.h \
 src/core/common.h src/core/log.h src/core/loop.h
src/cluster/dns.h:
src/core/common.h:
src/core/log.h:
src/core/loop.h:
