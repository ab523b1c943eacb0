build-x/obj/src/route/glob.o: src/route/glob.c src/route/route.h \
 src/route/route-t.h src/model/resource-t.h src/core/common.h
src/route/route.h:
src/route/route-t.h:
src/model/resource-t.h:
src/core/common.h:
