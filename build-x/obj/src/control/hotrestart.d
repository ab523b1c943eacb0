build-x/obj/src/control/hotrestart.o: src/control/hotrestart.c \
 src/control/hotrestart.h src/core/log.h src/core/loop.h \
 src/core/common.h src/control/listen.h src/model/snapshot-t.h \
 src/model/resource-t.h
src/control/hotrestart.h:
src/core/log.h:
src/core/loop.h:
src/core/common.h:
src/control/listen.h:
src/model/snapshot-t.h:
src/model/resource-t.h:
