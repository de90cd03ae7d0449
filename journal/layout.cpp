// Names of the data file's zones, for `tally inspect` and messages.
#include "journal/layout.hpp"

namespace tally::journal {

const char* zone_name(ZoneKind zone) {
  switch (zone) {
    case ZoneKind::superblock: return "superblock";
    case ZoneKind::wal_headers: return "wal_headers";
    case ZoneKind::wal_prepares: return "wal_prepares";
    case ZoneKind::client_replies: return "client_replies";
    case ZoneKind::grid: return "grid";
  }
  TALLY_UNREACHABLE();
}

}  // namespace tally::journal
