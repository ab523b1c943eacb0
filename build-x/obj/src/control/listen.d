build-x/obj/src/control/listen.o: src/control/listen.c \
 src/control/listen.h src/model/snapshot-t.h src/core/common.h \
 src/model/resource-t.h
src/control/listen.h:
src/model/snapshot-t.h:
src/core/common.h:
src/model/resource-t.h:
