build-x/obj/src/route/route.o: src/route/route.c src/route/route.h \
 src/route/route-t.h src/model/resource-t.h src/core/common.h
src/route/route.h:
src/route/route-t.h:
src/model/resource-t.h:
src/core/common.h:
