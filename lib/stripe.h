/* stripe: umbrella include for the three Stripe modules.
 *   stripe_sig.h     Stripe-Signature compute / verify
 *   stripe_event.h   event parsing, the status policy and ranks, the subscription change decision
 *   stripe_client.h  form encoding, the Checkout Session call, error sanitising, failure sentences
 * New code includes the one it needs. */
#ifndef GB_STRIPE_H
#define GB_STRIPE_H

#include "stripe_client.h"
#include "stripe_event.h"
#include "stripe_sig.h"

#endif
