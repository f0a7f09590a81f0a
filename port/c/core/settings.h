/* settings.h: the controller's settings. Python twin: airfsm/core/settings.py.
 *
 * airfsm_settings_t, airfsm_settings_default() and airfsm_settings_validate() are declared in
 * airfsm.h, the one header an application includes; settings.c defines them. The buffer sizes
 * settings.py fixes reach C through the generated table (AIRFSM_LINE_CAPACITY, ...) and
 * airfsm_config.h. */
#ifndef AIRFSM_SETTINGS_H
#define AIRFSM_SETTINGS_H

#include "airfsm.h"

#endif /* AIRFSM_SETTINGS_H */
