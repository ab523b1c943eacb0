build-x/obj/src/config/fields.o: src/config/fields.c src/config/fields.h \
 src/config/ynode.h src/config/load.h src/model/diag.h \
 src/model/resource-t.h src/core/arena.h src/core/common.h
src/config/fields.h:
src/config/ynode.h:
src/config/load.h:
src/model/diag.h:
src/model/resource-t.h:
src/core/arena.h:
src/core/common.h:
