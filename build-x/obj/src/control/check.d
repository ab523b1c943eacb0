build-x/obj/src/control/check.o: src/control/check.c src/control/check.h \
 src/config/compile.h src/model/resource-t.h src/model/snapshot-t.h \
 src/core/common.h src/config/load.h src/model/diag.h \
 src/config/snapshot.h src/core/loop.h src/tls/tls.h src/tls/tls-t.h
src/control/check.h:
src/config/compile.h:
src/model/resource-t.h:
src/model/snapshot-t.h:
src/core/common.h:
src/config/load.h:
src/model/diag.h:
src/config/snapshot.h:
src/core/loop.h:
src/tls/tls.h:
src/tls/tls-t.h:
