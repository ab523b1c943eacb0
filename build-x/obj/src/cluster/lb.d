build-x/obj/src/cluster/lb.o: src/cluster/lb.c src/cluster/lb.h \
 src/cluster/lb-t.h src/core/common.h src/model/snapshot-t.h \
 src/model/resource-t.h
src/cluster/lb.h:
src/cluster/lb-t.h:
src/core/common.h:
src/model/snapshot-t.h:
src/model/resource-t.h:
