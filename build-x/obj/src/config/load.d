build-x/obj/src/config/load.o: src/config/load.c src/config/load.h \
 src/model/diag.h src/model/resource-t.h src/config/ynode.h \
 src/core/arena.h src/core/common.h src/core/log.h src/core/strmap.h
src/config/load.h:
src/model/diag.h:
src/model/resource-t.h:
src/config/ynode.h:
src/core/arena.h:
src/core/common.h:
src/core/log.h:
src/core/strmap.h:
