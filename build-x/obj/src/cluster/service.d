build-x/obj/src/cluster/service.o: src/cluster/service.c \
 src/cluster/service.h src/model/resource-t.h src/model/snapshot-t.h \
 src/core/common.h src/core/strmap.h src/cluster/dns.h src/model/diag.h
src/cluster/service.h:
src/model/resource-t.h:
src/model/snapshot-t.h:
src/core/common.h:
src/core/strmap.h:
src/cluster/dns.h:
src/model/diag.h:
