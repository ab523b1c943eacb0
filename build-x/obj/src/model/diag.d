build-x/obj/src/model/diag.o: src/model/diag.c src/model/diag.h \
 src/model/resource-t.h src/core/common.h
src/model/diag.h:
src/model/resource-t.h:
src/core/common.h:
