build-x/obj/src/route/rewrite.o: src/route/rewrite.c src/route/route.h \
 src/route/route-t.h src/model/resource-t.h src/core/common.h
src/route/route.h:
src/route/route-t.h:
src/model/resource-t.h:
src/core/common.h:
