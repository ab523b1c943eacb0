build-x/obj/src/control/apply.o: src/control/apply.c src/control/apply.h \
 src/model/resource-t.h src/model/snapshot-t.h src/core/common.h \
 src/control/listen.h src/config/compile.h src/config/snapshot.h \
 src/model/diag.h src/observe/stats.h src/observe/stats-t.h
src/control/apply.h:
src/model/resource-t.h:
src/model/snapshot-t.h:
src/core/common.h:
src/control/listen.h:
src/config/compile.h:
src/config/snapshot.h:
src/model/diag.h:
src/observe/stats.h:
src/observe/stats-t.h:
