build-x/obj/src/config/resources.o: src/config/resources.c \
 src/config/fields.h src/config/ynode.h src/config/load.h \
 src/model/diag.h src/model/resource-t.h src/core/arena.h \
 src/core/common.h src/core/log.h src/core/strmap.h
src/config/fields.h:
src/config/ynode.h:
src/config/load.h:
src/model/diag.h:
src/model/resource-t.h:
src/core/arena.h:
src/core/common.h:
src/core/log.h:
src/core/strmap.h:
