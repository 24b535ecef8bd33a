# The ZooKeeper C client ships no pkg-config file either. We want the
# single-threaded flavour (libzookeeper_st): its I/O is driven by our libev
# loop through zookeeper_interest()/zookeeper_process(), so no hidden threads.
# Defines the imported target ZooKeeper::st.
find_path(ZOOKEEPER_INCLUDE_DIR zookeeper/zookeeper.h)
find_library(ZOOKEEPER_ST_LIBRARY NAMES zookeeper_st)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(ZooKeeperSt REQUIRED_VARS ZOOKEEPER_ST_LIBRARY ZOOKEEPER_INCLUDE_DIR)
if(ZooKeeperSt_FOUND AND NOT TARGET ZooKeeper::st)
  add_library(ZooKeeper::st UNKNOWN IMPORTED)
  set_target_properties(ZooKeeper::st PROPERTIES
    IMPORTED_LOCATION "${ZOOKEEPER_ST_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${ZOOKEEPER_INCLUDE_DIR}/zookeeper")
endif()
mark_as_advanced(ZOOKEEPER_INCLUDE_DIR ZOOKEEPER_ST_LIBRARY)
