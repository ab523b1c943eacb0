build-x/obj/src/observe/stats.o: src/observe/stats.c src/observe/stats.h \
 src/core/common.h src/observe/stats-t.h src/core/log.h src/core/strmap.h
src/observe/stats.h:
src/core/common.h:
src/observe/stats-t.h:
src/core/log.h:
src/core/strmap.h:
